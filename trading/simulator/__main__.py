"""`python -m trading.simulator [--port 8765] ...`: the simulator without Django."""
import sys

from .cli import main

sys.exit(main())
