"""Training: schedules and triggers, the training-job queue and its runner."""
