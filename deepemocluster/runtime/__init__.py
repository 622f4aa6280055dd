"""The process and the machine: devices and their capabilities, torchrun, the C heap, atomic files, failpoints, the entry points' exit codes."""
