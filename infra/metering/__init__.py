"""Every AWS request metered with its billed units and partition keys (``meter``), DynamoDB's size and unit
rules (``units``) and AWS's list prices (``prices``): shared by the benchmarks (``bench``) and by
``polos dev``, which shows each run's requests, price and per-key capacity (``polos capacity``)."""
