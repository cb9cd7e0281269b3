largebatch.py --arch resnet20 --epochs 6 --batch-size 128 --batch-size 1024 --seed 2 
