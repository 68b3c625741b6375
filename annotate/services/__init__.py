"""Business rules that write: plain functions named <entity>_<action>, keyword-only, typed."""
