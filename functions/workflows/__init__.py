"""The example app: the workflows of the user documentation, exactly as written there, and two beyond it
(``durable``: a run that waits, and a scheduled workflow).

The worker imports this package (``POLOS_APP=workflows``); ``polos template`` renders the stack from it.
The step functions stand in for real side effects and only log what they would do.
"""
