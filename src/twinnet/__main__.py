from twinnet.cli import main

raise SystemExit(main())
