# brainfm.configs: YAML recipes shipped as package data.
