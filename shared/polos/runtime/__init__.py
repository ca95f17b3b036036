"""The worker side: SQS messages to runs, one attempt of a run, the step journal, batch membership."""
