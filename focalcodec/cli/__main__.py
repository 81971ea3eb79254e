import sys

from focalcodec.cli.command import main

sys.exit(main())
