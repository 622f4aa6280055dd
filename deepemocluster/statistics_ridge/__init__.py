"""The statistics ridge: a ridge on the chunk statistics, its readout and its teacher."""
