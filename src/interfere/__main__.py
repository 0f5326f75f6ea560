from interfere.cli.main import main

raise SystemExit(main())
