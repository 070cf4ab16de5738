"""``python -m qorgau`` runs the ``qorgau`` command."""

from qorgau.cli import main

raise SystemExit(main())
