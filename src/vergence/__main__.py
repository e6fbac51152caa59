from vergence.cli import main

main()
