import sys

from cairn.node.cli import main

sys.exit(main())
