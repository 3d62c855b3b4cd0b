"""P2: transfer learning on Oxford-IIIT Pet with penultimate CNN features and a linear classifier."""
