"""The amphora agent: HAProxy beside a gRPC server the controller drives over mutual TLS."""
