from wiseale.cli import main

if __name__ == "__main__":  # not when a spawned process (reproduce --jobs) imports it
    raise SystemExit(main())
