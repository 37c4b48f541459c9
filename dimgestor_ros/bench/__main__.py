"""`python -m dimgestor_ros.bench TARGET ...`: the benchmarks without the rest of the command line's imports."""

from .cli import main

raise SystemExit(main())
