"""Checks of the deployment kits in deploy/, the Dockerfile and the build context."""
