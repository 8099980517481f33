"""The configs shipped with videotl; installed as the package data ``videotl.configs``."""
