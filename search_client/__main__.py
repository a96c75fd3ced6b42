import sys

from search_client.cli import main

sys.exit(main())
