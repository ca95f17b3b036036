"""The local stack: AWS on moto, the HTTP gateway and the event source mapping emulator."""
