"""Tests for chatroom."""
