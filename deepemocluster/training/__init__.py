"""Training: the data a run trains on (``data``), one optimisation step and its loss mix
(``step``), the DeepEmoCluster epoch (``trainer``), the hooks that observe it (``hooks``), and the
run around it: folder, resume, tracking, signals, final stage (``run``, ``signals``, ``run_folder``)."""
