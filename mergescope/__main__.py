from mergescope.cli.app import main

main()
