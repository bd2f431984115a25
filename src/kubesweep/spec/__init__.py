"""Reading sweep files: YAML with positions, the experiment model, foreign formats, and the rules
a sweep file must follow. Errors carry file:line:column."""
