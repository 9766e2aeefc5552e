"""Coverage-guided fuzzing (atheris, libFuzzer) of what reads untrusted bytes; `make fuzz`."""
