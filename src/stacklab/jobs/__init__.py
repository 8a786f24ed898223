"""Jobs: each step of the engine is a job function taking ids; runners decide where it executes."""
