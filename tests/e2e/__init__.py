"""End-to-end tests: a real step-ca calls the connector during real ACME orders."""
