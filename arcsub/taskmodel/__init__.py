"""The task-embedding model family (mdlARC's design, docs/task-model.md): one pair per sequence, a learned
embedding per task, 3-D rotary positions, trained jointly on every task's demonstrations."""
