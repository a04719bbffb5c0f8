from mspa_features.cli import main

main()
