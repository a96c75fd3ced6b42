import sys

from search_client.cli.main import main

sys.exit(main())
