"""Helpers shared by the test packages: the backends under test and their
factories, server starters, app building and the OpenAI spec loader."""
