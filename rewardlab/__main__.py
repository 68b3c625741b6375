from rewardlab.cli import main

raise SystemExit(main())
