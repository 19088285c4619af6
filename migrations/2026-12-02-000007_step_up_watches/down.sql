DROP TABLE step_up_watches;
