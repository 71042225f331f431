"""benchkit: the harness behind bin/bench (plan, verification, report); drivers live in ../drivers."""
