"""The `kubesweep` command and the invoke tasks' front end: parse, call the library, print."""
