"""The real ct-assets process killed with SIGKILL at named failpoints, then run again."""
