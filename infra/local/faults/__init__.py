"""AWS's faults in the local stack (``polos dev --aws-faults``, ``local_stack(aws_faults=...)``).

moto and the event source mapping emulation are kinder than AWS. Each module here turns on one thing AWS
does and they do not; :mod:`.config` parses the list, :mod:`.injector` holds the seeded randomness and the
counts of what was injected, :mod:`.calls` hooks the functions' AWS calls (throttles, limits, IAM).
"""
