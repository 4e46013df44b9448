from w2x.cli.main import main

raise SystemExit(main())
