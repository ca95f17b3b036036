"""The example app: the workflows of the user documentation, exactly as written there, and more beyond it
(``durable``: runs that wait for a time, an approval, an event or a child run, and a scheduled
workflow).

The worker imports this package (``POLOS_APP=workflows``); ``polos template`` renders the stack from it.
The step functions stand in for real side effects and only log what they would do.
"""
