from wiseale.cli import main

raise SystemExit(main())
