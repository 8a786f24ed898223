"""The web service: API for LMS adapters, the learner's lab page, the terminal bridge, the operator view."""
