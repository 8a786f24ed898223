"""The `openstack` provider: one Heat stack per environment, through openstacksdk."""
