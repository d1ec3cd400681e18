"""Why the model said what it said: class-activation maps, their faithfulness, similar past wafers."""
