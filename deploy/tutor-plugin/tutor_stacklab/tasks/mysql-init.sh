{%- if STACKLAB_RUNNER == "celery" and not STACKLAB_DATABASE_URL %}
# stacklab with runner celery: its own database and user in Tutor's MySQL, which the web side and the workers
# share (SQLite cannot be shared between processes of several containers)
mysql -u {{ MYSQL_ROOT_USERNAME }} --password="{{ MYSQL_ROOT_PASSWORD }}" --host "{{ MYSQL_HOST }}" --port {{ MYSQL_PORT }} -e "CREATE DATABASE IF NOT EXISTS {{ STACKLAB_MYSQL_DATABASE }} CHARACTER SET utf8mb4;"
mysql -u {{ MYSQL_ROOT_USERNAME }} --password="{{ MYSQL_ROOT_PASSWORD }}" --host "{{ MYSQL_HOST }}" --port {{ MYSQL_PORT }} -e "CREATE USER IF NOT EXISTS '{{ STACKLAB_MYSQL_USERNAME }}'@'%';"
mysql -u {{ MYSQL_ROOT_USERNAME }} --password="{{ MYSQL_ROOT_PASSWORD }}" --host "{{ MYSQL_HOST }}" --port {{ MYSQL_PORT }} -e "ALTER USER '{{ STACKLAB_MYSQL_USERNAME }}'@'%' IDENTIFIED BY '{{ STACKLAB_MYSQL_PASSWORD }}';"
mysql -u {{ MYSQL_ROOT_USERNAME }} --password="{{ MYSQL_ROOT_PASSWORD }}" --host "{{ MYSQL_HOST }}" --port {{ MYSQL_PORT }} -e "GRANT ALL ON {{ STACKLAB_MYSQL_DATABASE }}.* TO '{{ STACKLAB_MYSQL_USERNAME }}'@'%';"
{%- else %}
echo "stacklab: no database to create (runner {{ STACKLAB_RUNNER }}{{ ', STACKLAB_DATABASE_URL set' if STACKLAB_DATABASE_URL else '' }})"
{%- endif %}
