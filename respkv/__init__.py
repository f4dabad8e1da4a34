"""respkv: a Dynamo-style distributed key-value store that speaks the Redis protocol."""
__version__ = "0.1.0"
