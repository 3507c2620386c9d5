"""`python -m cropkit …`: see `cropkit.cli`."""
from cropkit.cli import main

raise SystemExit(main())
