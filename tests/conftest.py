"""Root of the test tree: its presence puts tests/ on sys.path, so every suite can `import serverkit`."""
