"""The API service: Octavia's v2 API as gRPC services, reached through the Envoy REST edge."""
