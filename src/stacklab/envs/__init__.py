"""Environments: one learner's instance of one lab, its states, policies and the controller."""
