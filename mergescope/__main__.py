from mergescope.cli import main

main()
