from ctrg.cli import main

raise SystemExit(main())
