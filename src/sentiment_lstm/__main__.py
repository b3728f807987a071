from sentiment_lstm.cli import main

raise SystemExit(main())
