from hmtel.cli import main

main()
