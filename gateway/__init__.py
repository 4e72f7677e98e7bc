"""The public gRPC front of miandan: end-user auth, cross-service composition, load shedding."""
